"""The RID application: the `rid` command line, `rid protect` and `rid check`. It sits on top of
server_fallback, ridexport, ridtrain and ridpixels, and nothing imports it."""
