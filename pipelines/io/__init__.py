"""Storage for every job: URLs → filesystems and small file operations (:mod:`.storage`), S3
settings (:mod:`.s3_settings`), the embedded S3 (:mod:`.local_s3`) and model directories
(:mod:`.model_store`)."""
