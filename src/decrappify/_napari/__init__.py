"""napari plugin: reader, writer, sample data and the dock widgets (a thin shell over the API)."""
