/* A stand-in for a kernel's EFI stub, for testing the boot selector under QEMU without an OS
 * image: it prints the command line it was started with, then powers the machine off (so QEMU
 * exits) -- unless the command line contains "fake.fail", in which case it returns an error to
 * its caller, as an EFI stub does when it cannot go on. */
#include <efi.h>
#include <efilib.h>

static BOOLEAN contains(const CHAR16 *s, UINTN n, const CHAR16 *word) {
        for (UINTN i = 0; i < n; i++) {
                UINTN k = 0;
                while (word[k] && i + k < n && s[i + k] == word[k])
                        k++;
                if (!word[k])
                        return TRUE;
        }
        return FALSE;
}

EFI_STATUS efi_main(EFI_HANDLE image, EFI_SYSTEM_TABLE *systab) {
        EFI_LOADED_IMAGE *li;
        static CHAR16 line[4096];
        const CHAR16 *opts = L"";
        UINTN n = 0;

        InitializeLib(image, systab);
        if (!EFI_ERROR(BS->HandleProtocol(image, &LoadedImageProtocol, (void **)&li)) &&
            li->LoadOptions) {
                opts = li->LoadOptions;
                n = li->LoadOptionsSize / sizeof(CHAR16);
                if (n > 0 && opts[n - 1] == 0)
                        n--;
        }
        for (UINTN i = 0; i < n && i + 1 < sizeof(line) / sizeof(line[0]); i++)
                line[i] = opts[i];
        line[n < 4095 ? n : 4095] = 0;
        Print(L"fake-kernel: cmdline=%s\n", line);
        if (contains(opts, n, L"fake.fail")) {
                Print(L"fake-kernel: failing as asked\n");
                return EFI_LOAD_ERROR;
        }
        RT->ResetSystem(EfiResetShutdown, EFI_SUCCESS, 0, NULL);
        return EFI_SUCCESS;
}
