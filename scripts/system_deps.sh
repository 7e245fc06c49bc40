#!/bin/sh
# Install the Debian packages the tests use (Fashion-MNIST, chromium) when they are missing.
# Without root or apt-get, say what is missing and carry on: those tests are skipped, with a reason.
missing=""
[ -d /usr/share/datasets/fashion-mnist ] || missing="$missing dataset-fashion-mnist"
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing="$missing chromium"
[ -n "$missing" ] || exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq $missing >/dev/null
else
    echo "not installed:$missing (needs root and apt-get); the tests that use them will be skipped"
fi
