"""napari plugin: reader, writer, sample data and the dock widgets (a thin shell over the API).

Modules (all private; the npe2 manifest ``decrappify/napari.yaml`` names the entry points):

* ``_io_hooks``: reader (TIFF, Zarr, OME-Zarr, TIFF folders), OME-Zarr writer, samples.
* ``_runner``: :class:`~decrappify._napari._runner.TaskPanel`, which runs progress-event
  generators in a worker thread with a progress bar and Cancel, and error notifications.
* ``_layers``: layers to :class:`decrappify.io.Image` records and back.
* ``_viewer_geometry``: the visible region, the current plane, LR regions (how grids are
  compared for scoring is :mod:`decrappify.metrics.alignment`).
* ``jobs``: the widgets' work as Qt-free generators of progress events, one module per
  widget (``jobs.crappify``, ``jobs.predict``, ``jobs.compare``), what they share
  (``jobs.compute``) and the recent models list (``jobs.models``).
* ``_controls``: the layer pickers, path fields and model picker shared by the widgets.
* ``_form``: form controls made from the fields of a config model (Super-resolve, Train).
* ``_plots``: matplotlib plots in the theme's colours.
* ``_crappify_widget``, ``_predict_widget``, ``_compare_widget``: the dock widgets;
  ``_train_widget`` with its form (``_train_form``) and plot (``_train_plot``).

See ``docs/napari.md``.
"""
