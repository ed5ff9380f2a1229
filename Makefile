# The two commands of the README:
#   make transcribe INPUT=../shared/data/audio/sherpa_yue-6.wav   (sets up, then transcribes)
#   make test                                                     (sets up, then runs every check)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INPUT ?= ../shared/data/audio/sherpa_yue-6.wav
ARGS ?=

.PHONY: setup transcribe test lint bench-asr bench-pipeline bench-word-times bench-lines bench-romanize bench-fuzz bench-gateway bench-abuse bench-accounts bench-cost bench-compression bench-live

$(BIN)/scribe: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

setup: $(BIN)/scribe

transcribe: setup
	$(BIN)/scribe transcribe "$(INPUT)" $(ARGS)

# docker-compose (Debian) validates compose.yaml offline in the tests.
/usr/bin/docker-compose:
	(apt-get update -qq && apt-get install -y -qq docker-compose >/dev/null) || sudo sh -c 'apt-get update -qq && apt-get install -y -qq docker-compose >/dev/null'

# Headless Chromium, its driver and a CJK font (Debian) for the viewer's browser tests (tests/integration/test_viewer.py).
/usr/bin/chromedriver:
	(apt-get update -qq && apt-get install -y -qq chromium chromium-driver fonts-wqy-zenhei >/dev/null) || sudo sh -c 'apt-get update -qq && apt-get install -y -qq chromium chromium-driver fonts-wqy-zenhei >/dev/null'

# lint-imports checks the layers declared in pyproject.toml ([tool.importlinter]).
lint: setup
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy core scribe streamer transcriber romanizer store gateway
	$(BIN)/lint-imports

test: setup /usr/bin/docker-compose /usr/bin/chromedriver lint
	HF_HUB_OFFLINE=1 $(BIN)/pytest -q

bench-asr: setup
	$(BIN)/python -m bench.asr_eval --threads 2 --vad on

bench-pipeline: setup
	$(BIN)/python -m bench.pipeline --runs 2

# Issue 16: what word times cost the pipeline (SCRIBE_ASR_WORD_TIMES=false and =true, alternating), then
# the speech model alone on the streamer's chunks (windows and temperature fallbacks).
bench-word-times: setup
	$(BIN)/python -m bench.pipeline --skip-baselines --compare-word-times --runs 2
	$(BIN)/python -m bench.word_times

# Issue 16: line times against a speech detector, uncertainty marks against the references, line
# lengths; before is the code of 840c49f in a git worktree.
bench-lines: setup
	$(BIN)/python -m bench.lines_eval

# Baselines of the benchmark only (ToJyutping is also what romanizer/build/lexicon.py rebuilds from).
bench-gateway: setup
	$(BIN)/python -m bench.gateway_load

# The gateway under attack, before and after issue 15 (a git worktree of the code before it).
bench-abuse: setup
	$(BIN)/python -m bench.abuse

# Issue 17: plan quotas on two gateway processes at once, and the p99 the shared rate limiter adds.
bench-accounts: setup
	$(BIN)/python -m bench.accounts

# Issue 18: billed minutes and cost of a 10-minute video (and of the same again), end to end at 1/8/32 calls in
# flight, videos a minute with 1/2/4 transcribers against the API's limit, cost alerts. The OpenAI API is
# SIMULATED (bench/sim_openai.py: canned text after 5 s a call). About 8 minutes (see --only for less).
bench-cost: setup
	$(BIN)/python -m bench.cost

# Issue 18: FLAC against Opus at 12-32 kb/s, bytes per audio minute and CER through the fake OpenAI API (the local
# model behind it); what SCRIBE_CHUNK_CODEC=auto sends an API was chosen from it. About 4 minutes.
bench-compression: setup
	$(BIN)/python -m bench.compression

# Issue 19: live sessions paced at real time over WS /v1/live: commit delay, first interim, CER beside file mode,
# sessions at once, and billed seconds per session second on the FAKE OpenAI API. About 10 minutes.
bench-live: setup
	$(BIN)/python -m bench.live --openai

bench-fuzz: setup
	$(BIN)/python -m bench.fuzz_media

bench-romanize: setup
	$(BIN)/pip install --quiet ToJyutping==3.2.0 canto-hk-g2p==2.6.1 xjyutping==1.3.1
	$(BIN)/python bench/romanize_eval.py
