# Two commands for a newcomer: `make run` and `make test`. See README.md.
.PHONY: run test lint setup

run:
	scripts/dev.sh run

test:
	scripts/dev.sh test $(ARGS)

lint:
	scripts/dev.sh lint

setup:
	scripts/dev.sh setup
