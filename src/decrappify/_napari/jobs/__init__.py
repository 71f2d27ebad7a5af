"""The work behind the widgets, as generators of progress events (no Qt here).

Each job takes :class:`decrappify.io.Image` records built from layers, calls the core
through :mod:`decrappify.api` (and reads and writes with :mod:`decrappify.io`), and
returns what the widget shows. The widgets run them in a thread worker
(:mod:`decrappify._napari._runner`); tests and scripts can run them with
:func:`decrappify.events.run_to_end`. The Compare and Train widgets need no job of their
own: they run :func:`decrappify.api.iter_compare` and :func:`decrappify.api.iter_train`.

* :mod:`.compute`: computing lazy arrays chunk by chunk, where large results go;
* :mod:`.crappify`: the Crappify widget's preview and whole-layer jobs;
* :mod:`.predict`: the Super-resolve widget's preview and whole-layer jobs;
* :mod:`.models`: the recent models list and a run's model.
"""
