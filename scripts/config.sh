# Shared settings for the project's scripts.  Sourced, not executed.
# shellcheck shell=bash

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

QEMU_DEB_VERSION='1:10.0.13+ds-0+deb13u1'
QEMU_DEB_SUITE='trixie'
QEMU_ORIG_TARBALL='qemu_10.0.13+ds.orig.tar.xz'
QEMU_ORIG_SHA256='6a0888e806c2ffc0c5f0733e974f9aea55491950d3c47c98669c8b236dde59ae'
QEMU_UPSTREAM_VERSION='10.0.13'
# This fork's own release scheme ("Since: postcopy-fork N" in its QAPI
# schema); query-version's package string names it and the series.
FORK_RELEASE='postcopy-fork 1'

CACHE_DIR=${CACHE_DIR:-$TOP/.cache}
QEMU_DIR=${QEMU_DIR:-$TOP/qemu}
BUILD_DIR=${BUILD_DIR:-$QEMU_DIR/build}
STOCK_DIR=${STOCK_DIR:-$CACHE_DIR/stock}
STOCK_BUILD_DIR=${STOCK_BUILD_DIR:-$STOCK_DIR/build}

die() {
    echo "error: $*" >&2
    exit 1
}

# Debian's firmware locations: seabios, option ROMs (qemu-system-data), ipxe.
FIRMWARE_PATH='/usr/share/qemu:/usr/share/seabios:/usr/lib/ipxe/qemu'

QEMU_CONFIGURE_ARGS=(
    --python=/usr/bin/python3
    --cc='ccache gcc'
    --cxx='ccache g++'
    --target-list=x86_64-softmmu
    --without-default-features
    --disable-download
    --disable-install-blobs
    --disable-fdt
    --enable-kvm
    --enable-tcg
    --enable-pixman
    --enable-slirp
    --disable-docs
    --firmwarepath="$FIRMWARE_PATH"
)
