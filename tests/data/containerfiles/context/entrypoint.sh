#!/bin/sh
set -e
echo "entry: $@"
exec "$@"
