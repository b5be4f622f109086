# bootloader-config/: the UEFI boot selector, \EFI\BOOT\BOOTX64.EFI on the ESP.
#
# Built with Debian's gnu-efi: objects are ELF, linked as a shared object against gnu-efi's
# crt0 and linker script, then turned into a PE32+ EFI application (subsystem 10) by objcopy.
# Compiled with no C library headers at all (-nostdinc): lib/gpt.c, lib/crc32.c and
# lib/slot-policy.c are portable and the rest speaks UEFI only.

EFI_ARCH       := x86_64
EFI_INC        := /usr/include/efi
EFI_LIBDIR     := /usr/lib
EFI_CRT0       := $(EFI_LIBDIR)/crt0-efi-$(EFI_ARCH).o
EFI_LDS        := $(EFI_LIBDIR)/elf_$(EFI_ARCH)_efi.lds

# -mgeneral-regs-only: nothing here needs the FPU, so no SSE state is touched before the kernel.
# -fshort-wchar: L"..." must be UCS-2 as UEFI wants it. GNU_EFI_USE_MS_ABI: call firmware
# services directly through ms_abi function pointers instead of gnu-efi's thunks.
EFI_CFLAGS = $(CSTD) $(WARN) -O2 -g -ffreestanding -fpic -fshort-wchar -fno-stack-protector \
	-fno-stack-check -fno-strict-aliasing -mno-red-zone -maccumulate-outgoing-args \
	-mgeneral-regs-only -DGNU_EFI_USE_MS_ABI \
	-nostdinc -isystem $(shell $(CC) -print-file-name=include) \
	-I$(EFI_INC) -I$(EFI_INC)/$(EFI_ARCH) -Ilib -Ibootloader-config
# --no-undefined: a shared-object link would otherwise accept a missing symbol, and gnu-efi's
# self-relocation cannot resolve one at run time.
EFI_LDFLAGS = -nostdlib -znocombreloc -T $(EFI_LDS) -shared -Bsymbolic --no-undefined -L$(EFI_LIBDIR)
EFI_OBJCOPY_SECTIONS = -j .text -j .sdata -j .data -j .dynamic -j .dynsym -j .rel -j .rela \
	-j '.rel.*' -j '.rela.*' -j .reloc

SELECTOR_SRCS := bootloader-config/selector-efi.c bootloader-config/selector-conf.c \
	bootloader-config/selector-cmdline.c lib/gpt.c lib/crc32.c lib/slot-policy.c lib/pci-path.c
SELECTOR_OBJS := $(SELECTOR_SRCS:%.c=$(OUT)/efi/obj/%.o)

SELECTOR_EFI := $(OUT)/efi/BOOTX64.EFI
# A stand-in kernel for the selector's own QEMU test: prints its command line, then powers off.
FAKE_KERNEL_EFI := $(OUT)/efi/fake-kernel.efi

EFI_BINS := $(SELECTOR_EFI) $(FAKE_KERNEL_EFI)
BINS += $(EFI_BINS)

$(OUT)/efi/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(EFI_CFLAGS) -MMD -MP -c $< -o $@

# $(call efi-link,objects,output)
define efi-link
	@mkdir -p $(@D)
	$(LD) $(EFI_LDFLAGS) $(EFI_CRT0) $(1) -o $(2).so.tmp -lefi -lgnuefi
	objcopy $(EFI_OBJCOPY_SECTIONS) --target efi-app-$(EFI_ARCH) --subsystem=10 \
		$(2).so.tmp $(2)
	@rm -f $(2).so.tmp
endef

$(SELECTOR_EFI): $(SELECTOR_OBJS)
	$(call efi-link,$^,$@)

$(FAKE_KERNEL_EFI): $(OUT)/efi/obj/bootloader-config/tests/fake-kernel.o
	$(call efi-link,$^,$@)

-include $(shell find $(OUT)/efi/obj -name '*.d' 2>/dev/null)

# Host unit tests of the parts that do not need firmware.
EXTRA_CFLAGS_bootloader-config := -Ibootloader-config
UNIT_TESTS += $(OUT)/test/test-selector

$(OUT)/test/test-selector: $(OUT)/obj-san/bootloader-config/tests/test-selector.o \
		$(OUT)/obj-san/bootloader-config/selector-conf.o \
		$(OUT)/obj-san/bootloader-config/selector-cmdline.o $(OUT)/obj-san/lib/pci-path.o \
		$(OUT)/obj-san/$(TEST_MAIN:.c=.o)
	@mkdir -p $(@D)
	$(CC) $(SAN) -o $@ $^

# The selector under OVMF on small synthetic disks (fake kernel): make check.
CHECK_SUITES += selector-qemu=bootloader-config/tests/qemu-selector.sh
