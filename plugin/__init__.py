"""Front ends of the engine: command line, editor worker process, GIMP installer."""
