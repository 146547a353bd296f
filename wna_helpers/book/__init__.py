"""book: the glue of the Jupyter Book's chapters. Imports any layer; nothing imports it.

``import wna_helpers`` never loads this package; a chapter does (``from wna_helpers import book``). It holds the
chapter set-up (:mod:`~wna_helpers.book.chapter`), the cached studies behind each chapter
(:mod:`~wna_helpers.book.studies` and the ``*_study`` modules), the results cache
(:mod:`~wna_helpers.book.results_cache`), the tables and prose (:mod:`~wna_helpers.book.report`,
:mod:`~wna_helpers.book.measures`), the figures (:mod:`~wna_helpers.book.plots`) and the widgets
(:mod:`~wna_helpers.book.widgets`).
"""
