"""The billing core shared by every tier: the policy engine and its versioned rules.

(More of the core moves here as issue 17 proceeds: the action executor, decline classification, the
policy facts repository and the Stripe adapter.)
"""
