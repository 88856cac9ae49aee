module commercejobs.local/pause

go 1.26
