# lib/: code two or more parts share. Each module has its unit test in lib/tests/.
LIB_HOSTED_SRCS := lib/log.c
