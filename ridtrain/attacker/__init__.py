"""The attacker and the judge: per-photo PGD (attacks), purifications (purify), personalization
(personalize), face scores (score) and the evaluation that compares them (evaluate). They may use
the defender's side; the defender never uses them."""
