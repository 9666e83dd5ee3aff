"""An example Meshgate connector plugin: a folder of Arrow IPC files, each file a data product."""
