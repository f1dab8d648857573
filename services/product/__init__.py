"""The reference product: a small SaaS product's own API (members, API keys, account profile) on the
embedded stack, so tierline's product connector acts over real HTTP. Not part of tierline's pipeline."""
