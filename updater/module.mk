# updater/: pivot-payload (build host), pivot-agent and pivotctl (device). See updater/README.md.

BINS += $(OUT)/bin/pivot-payload

$(OUT)/bin/pivot-payload: $(OUT)/obj/updater/pivot-payload.o $(OUT)/obj/lib/payload.o $(OUT)/obj/lib/log.o
	@mkdir -p $(@D)
	$(CC) -o $@ $^ $(PAYLOAD_LIBS)
