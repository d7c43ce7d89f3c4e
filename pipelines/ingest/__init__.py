"""Corpus ingestion shared by the jobs: input files → records (:mod:`.text_sources`) → sentences and
ids (:mod:`.sentences`), read as Ray Data datasets (:mod:`.reader`)."""
