"""Stage 1: the text corpus (CPython stdlib at CPU scale, a hub dataset at `paper`), tokenized."""
from repro.core.stage import StageContext, main
from repro.data.corpus import load_text_corpus, save_prepared, tokenizer_for


def run(ctx: StageContext) -> dict:
    p = ctx.params["data"]
    return save_prepared(load_text_corpus(p["source"]), tokenizer_for(p["tokenizer"]), ctx.out)


if __name__ == "__main__":
    main(run)
