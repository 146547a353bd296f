"""applications: what CIs are used for. Imports methods, engine and zoo; never paper or book.

CIs as a query-only attack (:mod:`~wna_helpers.book.application_study.attacks`), trojans and their detection
(:mod:`~wna_helpers.book.application_study.trojan`) and microstimulation (:mod:`~wna_helpers.book.application_study.microstimulation`).
"""
