"""The jobs the pipeline scripts run, one module each with its run loop and summary; what they
share (building the pipeline, loading a resource, reporting, one-line errors) is in `runner`."""
