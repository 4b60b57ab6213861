# kickstack: every target bootstraps .venv itself (scripts/bootstrap-venv).
SHELL := /bin/bash
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_FORCE_COLOR ?= 0

SITE ?= inventory/lab
BUILD ?= build/pxe
PYTEST_ARGS ?=

.PHONY: all lab venv secrets test lint golden bench clean

all: lab

venv:
	@scripts/bootstrap-venv

secrets: venv
	@$(VENV)/bin/python scripts/kickstack-secrets $(SITE)

## lab: set up and render the embedded default site into build/pxe
lab: secrets
	ansible-playbook -i $(SITE) playbooks/kickstart.yml -e kickstack_build_dir=$(CURDIR)/$(BUILD)

## test: install test dependencies and run the whole suite
test: venv
	@scripts/install-test-deps
	pytest $(PYTEST_ARGS)

lint: venv
	yamllint -s .
	ansible-lint --offline

## golden: regenerate the golden files after an intended change of the templates
golden: venv
	KICKSTACK_UPDATE_GOLDEN=1 pytest tests/test_golden.py

## bench: time kickstart.yml end to end for generated sites (N=100 and N=1000 by default)
bench: venv
	$(VENV)/bin/python scripts/bench $(or $(HOSTS),100 1000)

clean:
	rm -rf build
