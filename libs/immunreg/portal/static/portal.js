// The citizens' portal: plain JavaScript, no build step, no library. It calls the
// services' APIs directly with the citizen's own token (kept in sessionStorage, so it
// ends with the tab); the language chosen is remembered in localStorage.
import { MESSAGES } from "./i18n.js";

const TIMEZONE = "Europe/Belgrade";
const LOCALES = { "sr-Latn": "sr-Latn-RS", "sr-Cyrl": "sr-Cyrl-RS", en: "en-GB" };
const LANG_KEY = "immunreg.portal.lang";
const SESSION_KEY = "immunreg.portal.session";

const $ = (id) => document.getElementById(id);
let config = null;
let lang = chooseLanguage();
let session = readSession();
let contact = "";
// What home shows, kept to re-render in another language without asking again.
const home = { record: null, etag: null, appointments: [], doses: [], certificates: [], reads: [], sites: new Map(), qr: new Map() };
// The services whose audit logs hold reads of the person's data (`/v1/citizens/{id}/reads`).
const AUDITED = ["registration", "booking", "administration", "certificates"];

function chooseLanguage() {
  const saved = localStorage.getItem(LANG_KEY);
  if (saved && saved in LOCALES) return saved;
  return (navigator.language || "").toLowerCase().startsWith("en") ? "en" : "sr-Latn";
}

function t(key, values = {}) {
  const text = MESSAGES[lang][key] ?? MESSAGES.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(values[name] ?? ""));
}

function readSession() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
    return saved && saved.expires_at > Date.now() ? saved : null;
  } catch {
    return null;
  }
}

// --- formatting: the national timezone, the person's locale --------------------------------

function formatDay(isoDay) {
  // A calendar day: noon UTC is the same day in Belgrade whatever the season.
  return new Intl.DateTimeFormat(LOCALES[lang], {
    timeZone: TIMEZONE, weekday: "long", day: "numeric", month: "long", year: "numeric",
  }).format(new Date(`${isoDay}T12:00:00Z`));
}

function formatMoment(iso) {
  return new Intl.DateTimeFormat(LOCALES[lang], {
    timeZone: TIMEZONE, dateStyle: "long", timeStyle: "short",
  }).format(new Date(iso));
}

function todayInSerbia(plusDays = 0) {
  const day = new Date(Date.now() + plusDays * 86400000);
  return new Intl.DateTimeFormat("en-CA", { timeZone: TIMEZONE }).format(day);
}

function productName(code) {
  const found = config.products.find((p) => p.code === code);
  return found ? found.name : code;
}

// --- the API --------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

async function api(service, path, { method = "GET", body, headers = {}, raw = false } = {}) {
  const sent = { ...headers };
  if (session) sent.Authorization = `Bearer ${session.token}`;
  if (body !== undefined) sent["Content-Type"] = "application/json";
  const response = await fetch(config.services[service] + path, {
    method, headers: sent, body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401 && session) {
    signOut();
    say(t("session_ended"), true);
    throw new ApiError(401, { detail: t("session_ended") });
  }
  if (!response.ok) {
    const problem = await response.json().catch(() => ({ detail: response.statusText }));
    throw new ApiError(response.status, problem);
  }
  if (raw) return response;
  return response.status === 204 ? null : response.json();
}

const once = () => ({ "Idempotency-Key": crypto.randomUUID() });

// --- messages and field errors ----------------------------------------------------------------

function say(text, error = false) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", error);
}

function clearErrors(form) {
  form.querySelectorAll(".field-error").forEach((e) => e.remove());
  form.querySelectorAll(".field.invalid").forEach((f) => f.classList.remove("invalid"));
  form.querySelectorAll("[aria-invalid]").forEach((input) => {
    input.removeAttribute("aria-invalid");
    const hints = (input.getAttribute("aria-describedby") || "").split(" ").filter((id) => !id.endsWith("-error"));
    if (hints.length) input.setAttribute("aria-describedby", hints.join(" "));
    else input.removeAttribute("aria-describedby");
  });
  const summary = form.querySelector(".form-error");
  if (summary) summary.hidden = true;
}

// The API's problem+json names each bad field (`body.phone`): its reason goes under that
// field, anything not on the form in the summary at the top.
function showProblem(form, error) {
  clearErrors(form);
  const problem = error.problem || { detail: String(error) };
  const unplaced = [];
  let first = null;
  for (const item of problem.errors || []) {
    const name = item.field.replace(/^body\./, "");
    const field = form.querySelector(`.field[data-field="${CSS.escape(name)}"]`);
    const input = field && field.querySelector("input, select");
    if (!input) {
      unplaced.push(`${name}: ${item.reason}`);
      continue;
    }
    field.classList.add("invalid");
    const note = document.createElement("p");
    note.className = "field-error";
    note.id = `${input.id}-error`;
    note.textContent = item.reason;
    field.append(note);
    input.setAttribute("aria-invalid", "true");
    const hints = input.getAttribute("aria-describedby");
    input.setAttribute("aria-describedby", hints ? `${hints} ${note.id}` : note.id);
    first = first || input;
  }
  const summary = form.querySelector(".form-error");
  const text = problem.errors && problem.errors.length
    ? [t("fix_fields"), ...unplaced].join(" ")
    : t("error", { detail: problem.detail || problem.title });
  if (summary) {
    summary.textContent = text;
    summary.hidden = false;
  } else {
    say(text, true);
  }
  (first || summary || $("status")).focus?.();
}

// --- language -------------------------------------------------------------------------------------

function option(value, label) {
  const element = document.createElement("option");
  element.value = value;
  element.textContent = label;
  return element;
}

function fillSelects() {
  for (const select of document.querySelectorAll("select.municipalities")) {
    const kept = select.value;
    select.replaceChildren(
      ...(select.classList.contains("optional") ? [option("", t("same_as_residence"))] : []),
      ...config.municipalities.map((m) => option(m.code, m.name)),
    );
    if (kept) select.value = kept;
  }
  for (const select of document.querySelectorAll("select.products")) {
    const kept = select.value;
    select.replaceChildren(option("any", t("any_vaccine")), ...config.products.map((p) => option(p.code, p.name)));
    if (kept) select.value = kept;
  }
  for (const select of document.querySelectorAll("select.priority-groups")) {
    const kept = select.value || "general";
    select.replaceChildren(...config.priority_groups.map((g) => option(g.code, MESSAGES[lang][`pg_${g.code}`] || g.name)));
    select.value = kept;
  }
}

function applyLanguage() {
  document.documentElement.lang = lang;
  $("lang").value = lang;
  for (const element of document.querySelectorAll("[data-i18n]")) {
    element.textContent = t(element.dataset.i18n);
  }
  if (config) fillSelects();
  if (session && home.record) renderHome();
}

// --- start: register, sign in -------------------------------------------------------------------

function registration(form) {
  const value = (name) => form.elements[name].value.trim();
  const body = {
    national_id: value("national_id"),
    given_name: value("given_name"),
    family_name: value("family_name"),
    birth_date: value("birth_date") || null,
    sex: value("sex"),
    municipality_code: value("municipality_code"),
    priority_group: value("priority_group"),
    vaccine_preferences: [value("vaccine_preferences")],
    consent: {
      data_processing: form.elements["consent.data_processing"].checked,
      reminders: form.elements["consent.reminders"].checked,
    },
    language: lang,
  };
  if (value("phone")) body.phone = value("phone");
  if (value("email")) body.email = value("email");
  if (value("preferred_municipality_code")) body.preferred_municipality_code = value("preferred_municipality_code");
  return body;
}

async function register(event) {
  event.preventDefault();
  const form = event.target;
  clearErrors(form);
  const body = registration(form);
  try {
    await api("registration", "/v1/citizens", { method: "POST", body, headers: once() });
  } catch (error) {
    showProblem(form, error);
    return;
  }
  form.reset();
  fillSelects();
  say(t("registered_ok"));
  $("s-contact").value = body.phone || body.email || "";
  $("s-contact").focus();
}

async function sendCode(event) {
  event.preventDefault();
  const form = event.target;
  clearErrors(form);
  contact = form.elements.contact.value.trim();
  try {
    await api("registration", "/v1/sign-in/codes", { method: "POST", body: { contact } });
  } catch (error) {
    showProblem(form, error);
    return;
  }
  say(t("code_sent"));
  $("token-form").hidden = false;
  $("s-code").focus();
}

async function signIn(event) {
  event.preventDefault();
  const form = event.target;
  clearErrors(form);
  let answer;
  try {
    answer = await api("registration", "/v1/sign-in/tokens", {
      method: "POST", body: { contact, code: form.elements.code.value.trim() },
    });
  } catch (error) {
    showProblem(form, error);
    return;
  }
  session = {
    token: answer.access_token,
    citizen_id: answer.citizen_id,
    expires_at: Date.now() + answer.expires_in * 1000,
  };
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
  form.reset();
  form.hidden = true;
  say("");
  await loadHome();
}

function signOut() {
  session = null;
  sessionStorage.removeItem(SESSION_KEY);
  home.record = null;
  home.qr.forEach((url) => URL.revokeObjectURL(url));
  home.qr.clear();
  show("start");
}

function show(view) {
  $("start").hidden = view !== "start";
  $("home").hidden = view !== "home";
  $("sign-out").hidden = view !== "home";
  document.body.dataset.view = view;
}

// --- home: the person's record -----------------------------------------------------------------

async function loadHome() {
  const id = encodeURIComponent(session.citizen_id);
  document.body.dataset.loading = "true";
  try {
    const [citizen, appointments, doses, certificates, sites, reads] = await Promise.all([
      api("registration", `/v1/citizens/${id}`, { raw: true }),
      api("booking", `/v1/citizens/${id}/appointments`),
      api("administration", `/v1/citizens/${id}/doses`).catch((e) => (e.status === 404 ? { doses: [] } : Promise.reject(e))),
      api("certificates", `/v1/citizens/${id}/certificates`),
      home.sites.size ? null : allSites(),
      readsByOthers(id),
    ]);
    home.etag = citizen.headers.get("ETag");
    home.record = await citizen.json();
    home.appointments = appointments.items;
    home.doses = doses.doses;
    home.certificates = certificates.certificates;
    for (const site of sites || []) home.sites.set(site.site_id, site);
    home.reads = reads;
    await loadQrCodes();
  } catch (error) {
    if (error.status !== 401) say(t("error", { detail: error.message }), true);
    return;
  } finally {
    delete document.body.dataset.loading;
  }
  show("home");
  fillContacts();
  renderHome();
  document.body.dataset.loaded = String(Number(document.body.dataset.loaded || 0) + 1);
}

// Who read the person's data, in every service that keeps a record of it: staff only (the
// person's own visits are in the logs too, and are no news to them), newest first.
async function readsByOthers(id) {
  const pages = await Promise.all(AUDITED.map((service) =>
    api(service, `/v1/citizens/${id}/reads?limit=50`).then((page) => page.items.map((item) => ({ ...item, service })))));
  return pages.flat().filter((item) => item.role !== "citizen").sort((a, b) => b.at.localeCompare(a.at));
}

async function allSites() {
  const sites = [];
  let cursor = "";
  do {
    const page = await api("booking", `/v1/sites?limit=500${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
    sites.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor);
  return sites;
}

function certificatePath(uvci, what) {
  return `/v1/certificates/${encodeURIComponent(uvci)}/${what}`;
}

async function loadQrCodes() {
  for (const certificate of home.certificates) {
    if (home.qr.has(certificate.uvci) || certificate.hc1 === null) continue;
    const response = await api("certificates", certificatePath(certificate.uvci, "qr.png"), { raw: true });
    home.qr.set(certificate.uvci, URL.createObjectURL(await response.blob()));
  }
}

function element(tag, attributes = {}, ...children) {
  const made = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "text") made.textContent = value;
    else made.setAttribute(name, value);
  }
  made.append(...children);
  return made;
}

function facts(pairs) {
  const list = element("dl", { class: "facts" });
  for (const [label, value] of pairs) list.append(element("dt", { text: label }), element("dd", {}, value));
  return list;
}

function mapLink(site) {
  const href = site.latitude != null && site.longitude != null
    ? `https://www.openstreetmap.org/?mlat=${site.latitude}&mlon=${site.longitude}#map=17/${site.latitude}/${site.longitude}`
    : `https://www.openstreetmap.org/search?query=${encodeURIComponent(site.address)}`;
  return element("a", { href, target: "_blank", rel: "noopener", id: "map-link", text: t("map", { site: site.name }) });
}

function renderHome() {
  const record = home.record;
  $("welcome").textContent = t("welcome", { name: `${record.given_name} ${record.family_name}` });
  renderAppointment();
  renderDoses();
  renderCertificates();
  renderReads();
}

function renderReads() {
  if (!home.reads.length) {
    $("reads").replaceChildren(element("p", { text: t("no_reads") }));
    return;
  }
  const head = element("tr", {}, ...["reads_when", "reads_who", "reads_what", "reads_why"].map((k) => element("th", { scope: "col", text: t(k) })));
  const rows = home.reads.map((read) => element("tr", {},
    element("td", { text: formatMoment(read.at) }),
    element("td", { text: [t(`role_${read.role}`), read.subject, read.site_id].filter(Boolean).join(" · ") }),
    element("td", { text: t(`svc_${read.service}`) }),
    element("td", { text: read.reason || "" }),
  ));
  $("reads").replaceChildren(element("table", { id: "reads-table" }, element("thead", {}, head), element("tbody", {}, ...rows)));
}

function renderAppointment() {
  const open = home.appointments.find((a) => a.status === "booked");
  const box = $("appointment");
  const form = $("reschedule-form");
  if (!open) {
    box.replaceChildren(element("p", { text: t("no_appointment") }));
    form.hidden = true;
    return;
  }
  const site = home.sites.get(open.site_id) || { name: open.site_id, address: "", site_id: open.site_id, opening_hours: "" };
  const [from, to] = (site.opening_hours || "").split("-");
  const vaccine = `${productName(open.product_code)} · ${open.booster ? t("booster") : t("dose_n", { n: open.dose_number })}`;
  box.replaceChildren(facts([
    [t("site"), site.name],
    [t("address"), element("span", {}, `${site.address} `, mapLink(site))],
    [t("date"), element("span", { id: "appointment-day", "data-day": open.day, text: formatDay(open.day) })],
    [t("time"), from && to ? t("time_range", { from, to }) : site.opening_hours],
    [t("vaccine_label"), vaccine],
    [t("status"), t(`appt_${open.status}`)],
  ]));
  form.hidden = false;
  form.dataset.appointment = open.appointment_id;
  const day = $("m-day");
  day.min = todayInSerbia(1);
  if (!day.value) day.value = "";
  const select = $("m-site");
  const kept = select.value;
  select.replaceChildren(
    option("", `${t("same_site")} (${site.name})`),
    ...[...home.sites.values()]
      .filter((s) => s.site_id !== open.site_id && open.product_code in (s.daily_capacity || {}))
      .map((s) => option(s.site_id, `${s.name}, ${s.address}`)),
  );
  select.value = kept;
}

function renderDoses() {
  if (!home.doses.length) {
    $("doses").replaceChildren(element("p", { text: t("no_doses") }));
    return;
  }
  const head = element("tr", {}, ...["date", "vaccine_label", "site", "lot", "status"].map((k) => element("th", { scope: "col", text: t(k) })));
  const rows = home.doses.map((d) => element("tr", {},
    element("td", { text: formatMoment(d.administered_at) }),
    element("td", { text: `${d.product_name || productName(d.product_code)} · ${d.booster ? t("booster") : t("dose_n", { n: d.dose_number })}` }),
    element("td", { text: d.site_name || d.site_id }),
    element("td", { text: d.lot_number }),
    element("td", { text: t(`dose_${d.status}`) }),
  ));
  $("doses").replaceChildren(element("table", { id: "doses-table" }, element("thead", {}, head), element("tbody", {}, ...rows)));
}

function renderCertificates() {
  if (!home.certificates.length) {
    $("certificates").replaceChildren(element("p", { text: t("no_certs") }));
    return;
  }
  const items = home.certificates.map((c) => {
    const details = element("div", {},
      element("p", { text: `${productName(c.product_code)} · ${t("cert_of", { n: c.dose_number, total: c.total_doses })}` }),
      facts([
        [t("date"), formatDay(c.vaccination_date)],
        [t("status"), t(`cert_${c.status}`)],
        [t("valid_until"), formatMoment(c.expires_at)],
        ["UVCI", element("span", { class: "uvci", text: c.uvci })],
      ]),
    );
    const actions = element("div", { class: "row" });
    if (c.hc1 !== null) {
      const qr = element("button", { type: "button", class: "btn primary download-qr", "data-uvci": c.uvci, text: t("download_qr") });
      qr.addEventListener("click", () => download(certificatePath(c.uvci, "qr.png"), `certificate-${fileName(c.uvci)}.png`));
      const page = element("button", { type: "button", class: "btn download-print", "data-uvci": c.uvci, text: t("download_print") });
      page.addEventListener("click", () => download(certificatePath(c.uvci, "print"), `certificate-${fileName(c.uvci)}.html`));
      actions.append(qr, page);
      details.append(actions);
    }
    const image = home.qr.get(c.uvci);
    return element("li", {}, ...(image ? [element("img", { src: image, alt: t("qr_alt", { uvci: c.uvci }) })] : []), details);
  });
  $("certificates").replaceChildren(element("ul", { class: "certs" }, ...items));
}

function fileName(uvci) {
  return uvci.replace(/[^A-Za-z0-9]+/g, "-").replace(/^-|-$/g, "");
}

async function download(path, name) {
  try {
    const response = await api("certificates", path, { raw: true });
    const link = $("download");
    link.href = URL.createObjectURL(await response.blob());
    link.download = name;
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 60000);
  } catch (error) {
    if (error.status !== 401) say(t("error", { detail: error.message }), true);
  }
}

// --- home: changes ---------------------------------------------------------------------------

async function reschedule(event) {
  event.preventDefault();
  const form = event.target;
  clearErrors(form);
  const body = { day: form.elements.day.value || null };
  if (form.elements.site_id.value) body.site_id = form.elements.site_id.value;
  const id = encodeURIComponent(form.dataset.appointment);
  try {
    await api("booking", `/v1/appointments/${id}/reschedule`, { method: "POST", body, headers: once() });
  } catch (error) {
    showProblem(form, error);
    return;
  }
  form.reset();
  await loadHome();
  say(t("rescheduled"));
}

async function cancelAppointment() {
  if (!window.confirm(t("cancel_confirm"))) return;
  const id = encodeURIComponent($("reschedule-form").dataset.appointment);
  try {
    await api("booking", `/v1/appointments/${id}/cancel`, { method: "POST", headers: once() });
  } catch (error) {
    showProblem($("reschedule-form"), error);
    return;
  }
  await loadHome();
  say(t("cancelled"));
}

function fillContacts() {
  const form = $("contacts-form");
  const record = home.record;
  form.elements.phone.value = record.phone || "";
  form.elements.email.value = record.email || "";
  form.elements.vaccine_preferences.value = record.vaccine_preferences[0] || "any";
  form.elements.preferred_municipality_code.value = record.preferred_municipality_code || "";
  form.elements.language.value = record.language || lang;
}

async function saveContacts(event) {
  event.preventDefault();
  const form = event.target;
  clearErrors(form);
  const record = home.record;
  const value = (name) => form.elements[name].value.trim() || null;
  const change = {};
  if (value("phone") !== record.phone) change.phone = value("phone");
  if (value("email") !== record.email) change.email = value("email");
  const vaccine = form.elements.vaccine_preferences.value;
  if (vaccine !== (record.vaccine_preferences[0] || "any")) change.vaccine_preferences = [vaccine];
  if (value("preferred_municipality_code") !== record.preferred_municipality_code) {
    change.preferred_municipality_code = value("preferred_municipality_code");
  }
  change.language = form.elements.language.value;
  try {
    const response = await api("registration", `/v1/citizens/${encodeURIComponent(session.citizen_id)}`, {
      method: "PATCH", body: change, headers: { "If-Match": home.etag }, raw: true,
    });
    home.etag = response.headers.get("ETag");
    home.record = await response.json();
  } catch (error) {
    showProblem(form, error);
    return;
  }
  fillContacts();
  say(t("saved"));
}

async function withdraw() {
  if (!window.confirm(t("withdraw_confirm"))) return;
  try {
    await api("registration", `/v1/citizens/${encodeURIComponent(session.citizen_id)}`, {
      method: "DELETE", headers: { "If-Match": home.etag },
    });
  } catch (error) {
    say(t("error", { detail: error.message }), true);
    return;
  }
  signOut();
  say(t("withdrawn"));
}

// --- start-up -----------------------------------------------------------------------------------

async function start() {
  config = await (await fetch("/config.json")).json();
  $("lang").addEventListener("change", (event) => {
    lang = event.target.value;
    localStorage.setItem(LANG_KEY, lang);
    applyLanguage();
  });
  $("register-form").addEventListener("submit", register);
  $("code-form").addEventListener("submit", sendCode);
  $("token-form").addEventListener("submit", signIn);
  $("reschedule-form").addEventListener("submit", reschedule);
  $("cancel-appointment").addEventListener("click", cancelAppointment);
  $("contacts-form").addEventListener("submit", saveContacts);
  $("withdraw").addEventListener("click", withdraw);
  $("sign-out").addEventListener("click", () => { signOut(); say(""); });
  applyLanguage();
  if (session) await loadHome();
  else show("start");
  document.body.dataset.ready = "true";
}

start();
