"""Loaded by the barman-cloud processes of bench/backup.py (on their PYTHONPATH): gzip at the
level every tool of the bench uses (BENCH_GZIP_LEVEL, 6) instead of Python's default 9.
barman-cloud 3.4 has no option for it: its WAL files go through gzip.GzipFile (default
compresslevel 9) and its base backup tarballs through tarfile's "w|gz" stream (zlib level 9,
hard-coded). Both defaults are replaced here; nothing else changes."""
import gzip
import os
import tarfile
import zlib

LEVEL = int(os.environ.get("BENCH_GZIP_LEVEL", "6"))

_gzip_init = gzip.GzipFile.__init__


def _gzip_file_init(self, filename=None, mode=None, compresslevel=LEVEL, fileobj=None,
                    mtime=None):
    _gzip_init(self, filename, mode, compresslevel, fileobj, mtime)


gzip.GzipFile.__init__ = _gzip_file_init

_init_write_gz = tarfile._Stream._init_write_gz


def _stream_init_write_gz(self, *args, **kwargs):
    _init_write_gz(self, *args, **kwargs)
    # Nothing is compressed yet (only the gzip header is buffered): swap the compressor.
    self.cmp = zlib.compressobj(LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS, zlib.DEF_MEM_LEVEL, 0)


tarfile._Stream._init_write_gz = _stream_init_write_gz
