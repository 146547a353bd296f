"""The chapters' tables, sentences and figures, one module per chapter.

Each function takes a chapter's study results (plain dicts and result objects, keyed by ``(model, dataset)``)
and its :class:`~wna_helpers.book.chapter.Chapter`, and returns what the chapter shows: Markdown strings and
matplotlib figures, in display order, for :meth:`~wna_helpers.book.chapter.Chapter.show`. The tests feed them
small synthetic results with known answers. Criteria come from :mod:`~wna_helpers.book.criteria`.
"""
