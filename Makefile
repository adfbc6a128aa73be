# Two commands for a newcomer: `make run` and `make test`. See README.md.
.PHONY: run serve test lint typecheck setup

run:
	scripts/dev.sh run

# Production web command: uvicorn, one process per core (see README "Production shape").
serve:
	scripts/dev.sh serve

test:
	scripts/dev.sh test $(ARGS)

lint:
	scripts/dev.sh lint

typecheck:
	scripts/dev.sh typecheck

setup:
	scripts/dev.sh setup
