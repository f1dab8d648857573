"""The billing core shared by every tier: the policy engine and its versioned rules, decline
classification (declines.py), the Stripe mirror in Postgres (mirror.py) and its records (records.py), and
the policy facts repository (facts.py: one query; the router's gates and the policy's context both derive
from it, with one rule each for an open dispute and a fraud signal).

(More of the core moves here as issue 17 proceeds: the action executor and the Stripe adapter.)
"""
