#!/bin/sh
# Install the Debian packages modeconn's tests and demo use, when they are missing: Fashion-MNIST, the fortunes text
# and chromium (the tests, `make test`), or only those named (`make demo`: sh scripts/system_deps.sh fortunes).
# Without root or apt-get, say what is missing and carry on: those tests are skipped, with a reason.
wanted="${*:-dataset-fashion-mnist fortunes chromium}"
missing=""
for package in $wanted; do
    case "$package" in
        dataset-fashion-mnist) [ -d /usr/share/datasets/fashion-mnist ] || missing="$missing $package" ;;
        fortunes) [ -f /usr/share/games/fortunes/science ] || missing="$missing $package" ;;
        chromium) command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
                      || missing="$missing $package" ;;
        *) echo "system_deps.sh: unknown package $package" >&2; exit 2 ;;
    esac
done
[ -n "$missing" ] || exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq $missing >/dev/null
else
    echo "not installed:$missing (needs root and apt-get); what uses them is skipped"
fi
