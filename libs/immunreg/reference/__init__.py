"""Reference data every context reads: vaccines, conditions, priority groups, geography.

Files under data/ are the configuration; these modules only load and type them.
"""
