"""The Pulumi project that deploys the capstone on Google Cloud.

``stack.build()`` declares everything from the stack's config; ``__main__.py`` is
what ``pulumi up`` runs. Each concern is a module of its own: ``network``,
``database``, ``replica``, ``cluster``, ``registry``, ``secrets``, ``identity``,
``kubernetes``, ``edge``, ``armor``. ``policies`` checks the result, offline in the
tests and as a policy pack in ``infra/policy``.
"""
