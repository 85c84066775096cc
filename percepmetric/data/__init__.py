"""Datasets: BAPPS (:mod:`.bapps`), its synthetic stand-in (:mod:`.fixtures`), the official
download (:mod:`.download`) and the built-in example triplet (:mod:`.examples`)."""
