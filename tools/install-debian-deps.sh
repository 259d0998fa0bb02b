#!/bin/sh
# Debian packages the project uses that PyPI cannot give: the Fashion-MNIST data, Icarus
# Verilog (golden-vector testbenches), and a C++ compiler + perl + make (+ lz4 headers)
# for Verilator.
# Installs only what is missing; needs root (or sudo).
set -eu
need=""
[ -d /usr/share/datasets/fashion-mnist ] || need="$need dataset-fashion-mnist"
command -v iverilog >/dev/null 2>&1 || need="$need iverilog"
command -v make >/dev/null 2>&1 || need="$need make"
command -v perl >/dev/null 2>&1 || need="$need perl"
command -v g++ >/dev/null 2>&1 || need="$need g++"
python3 -c "import venv, ensurepip" >/dev/null 2>&1 || need="$need python3-venv"
# lz4 headers: Verilator's FST waveform writer (hwgen sim --waves out.fst)
[ -f /usr/include/lz4.h ] || need="$need liblz4-dev"
[ -z "$need" ] && exit 0
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# shellcheck disable=SC2086
$sudo apt-get install -y -qq $need >/dev/null
