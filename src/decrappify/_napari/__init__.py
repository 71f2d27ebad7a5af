"""napari plugin: reader, writer, sample data and the dock widgets (a thin shell over the API).

Modules (all private; the npe2 manifest ``decrappify/napari.yaml`` names the entry points):

* ``_io_hooks``: reader (TIFF, Zarr, OME-Zarr, TIFF folders), OME-Zarr writer, samples.
* ``_runner``: :class:`~decrappify._napari._runner.TaskPanel`, which runs progress-event
  generators in a worker thread with a progress bar and Cancel, and error notifications.
* ``_layers``: layers to :class:`decrappify.io.Image` records and back.
* ``_alignment``: visible regions, current planes, units and how grids are compared.
* ``_jobs``: the widgets' work as Qt-free generators of progress events.
* ``_controls``: the layer picker and path field shared by the widgets.
* ``_crappify_widget``, ``_compare_widget``: the dock widgets.

See ``docs/napari.md``.
"""
