# Two commands for a newcomer: `make run` and `make test`. See README.md.
.PHONY: run serve test lint setup

run:
	scripts/dev.sh run

# Production web command: uvicorn, one process per core (see README "Production shape").
serve:
	scripts/dev.sh serve

test:
	scripts/dev.sh test $(ARGS)

lint:
	scripts/dev.sh lint

setup:
	scripts/dev.sh setup
