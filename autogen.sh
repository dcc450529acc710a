#!/bin/sh
# Generate configure and the Makefile.in files (they are not committed).
set -e
cd "$(dirname "$0")"
mkdir -p m4
autoreconf -fi
