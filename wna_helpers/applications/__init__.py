"""applications: what CIs are used for. Imports methods, engine and zoo; never paper or book.

CIs as a query-only attack (:mod:`~wna_helpers.applications.attacks`), trojans and their detection
(:mod:`~wna_helpers.applications.trojan`, with :mod:`~wna_helpers.applications.detection` for how well a score
separates two groups of models), microstimulation (:mod:`~wna_helpers.applications.microstimulation`) and a
simulated observer with a known template (:mod:`~wna_helpers.applications.observer`), and a two-alternative
task for a person, answers saved as they come (:mod:`~wna_helpers.applications.observer_task`).
"""
