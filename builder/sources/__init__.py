"""Sources make layer entries or images: files, tarballs, Debian packages, PyInstaller, pulled bases."""
