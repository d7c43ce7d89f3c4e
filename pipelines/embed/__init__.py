"""``elmo embed``: the job (:mod:`.job`), the Ray actor (:mod:`.actor`), the output columns
(:mod:`.output`) and the exactly-once manifest (:mod:`.manifest`)."""
