#!/usr/bin/env bash
# Installs Google Research Football (gfootball 2.10.2, which compiles its C++ engine) into the Python that runs this
# project, on Debian or Ubuntu. Football stays optional: it is not in requirements.txt, and CI does not install it.
# On a 2-core machine the apt packages take about 2 minutes and the compile about 10 (14 while other jobs ran).
#
# Usage (from anywhere):   bash benchmark/install_football.sh
#   PYTHON=venv/bin/python     the interpreter to install into (default: the `python` on PATH)
# Then: python -m pytest tests/test_football.py   (the football tests run where gfootball imports, and skip elsewhere)
set -euo pipefail
PYTHON=${PYTHON:-python}
SUDO=$([[ $(id -u) == 0 ]] && echo "" || echo sudo)

# The engine's build dependencies, as gfootball's README lists them (x11vnc only serves remote viewing: left out)
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends git cmake build-essential libgl1-mesa-dev libsdl2-dev \
    libsdl2-image-dev libsdl2-ttf-dev libsdl2-gfx-dev libboost-all-dev libdirectfb-dev libst-dev mesa-utils xvfb

# gfootball speaks gym's old API (step returns 4 values, reset only the observation): gym 0.23.1 is the newest gym with
# it that installs with today's pip (0.21, the official implementation's pin, does not). gfootball imports six without
# declaring it, and its build script imports psutil.
"$PYTHON" -m pip install "gym==0.23.1" psutil wheel six "opencv-python<4.11" pygame absl-py scipy
# The build script runs `python3 -c "import psutil"` from PATH: this interpreter's folder goes first, and the build
# sees its packages (no build isolation).
bin_dir=$(dirname "$("$PYTHON" -c 'import sys; print(sys.executable)')")
PATH="$bin_dir:$PATH" "$PYTHON" -m pip install --no-build-isolation gfootball==2.10.2
"$PYTHON" -c "
import gfootball.env as football
env = football.create_environment(env_name='academy_3_vs_1_with_keeper', representation='simple115v2',
                                  number_of_left_players_agent_controls=3)
print('gfootball works: academy_3_vs_1_with_keeper observations', env.reset().shape)
"
