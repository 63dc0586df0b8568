"""Stage 1: the text corpus (CPython stdlib at CPU scale, a hub dataset at `paper`), tokenized."""
from repro.core.stage import main
from repro.data.corpus import prepare as run

if __name__ == "__main__":
    main(run)
