/* daemon/room-check.c: the stub main of daemon/meson.build's per-room link checks: linking one whole room against only the rooms below it fails on any upward call. */
int main(void)
{
        return 0;
}
