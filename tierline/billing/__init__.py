"""The billing core shared by every tier: the policy engine and its versioned rules, decline
classification (declines.py), the Stripe mirror in Postgres (mirror.py) and its records (records.py).

(More of the core moves here as issue 17 proceeds: the action executor, the policy facts repository and
the Stripe adapter.)
"""
