/* tests/vm/subreaper.c: runs one command as a child subreaper, reaps every orphan at once, and
 * kills whatever is left when the command exits or we are told to stop; owns nothing else.
 *
 * libvirtd double-forks QEMU, so an exited QEMU is reparented to us and reaped immediately
 * instead of lingering (libvirtd otherwise waits ~2 s per destroy/migration). libvirtd does not
 * kill guests when it exits, so after it is gone we SIGKILL the QEMUs it left behind: the test
 * fixture can never leave a process running, even when the test itself crashes. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t subreaper_main_pid;

static void subreaper_forward(int sig __attribute__((unused)))
{
        if (subreaper_main_pid > 0)
                kill(subreaper_main_pid, SIGTERM);
}

/* SIGKILLs every process whose parent is us: the orphans reparented here. Returns how many. */
static int subreaper_kill_orphans(void)
{
        DIR *d = opendir("/proc");
        struct dirent *de;
        pid_t self = getpid();
        int n = 0;

        if (!d)
                return 0;
        while ((de = readdir(d))) {
                char path[300], buf[512], *p;
                FILE *f;
                int ppid;

                if (de->d_name[0] < '0' || de->d_name[0] > '9')
                        continue;
                snprintf(path, sizeof(path), "/proc/%s/stat", de->d_name);
                f = fopen(path, "re");
                if (!f)
                        continue;
                p = fgets(buf, sizeof(buf), f);
                fclose(f);
                /* The command name may hold spaces and parentheses: parse after the last ')'. */
                if (!p || !(p = strrchr(buf, ')')) || sscanf(p + 1, " %*c %d", &ppid) != 1)
                        continue;
                if (ppid == self) {
                        kill(atoi(de->d_name), SIGKILL);
                        n++;
                }
        }
        closedir(d);
        return n;
}

int main(int argc, char **argv)
{
        struct sigaction sa = { .sa_handler = subreaper_forward };
        int status = 0, main_status = 1;
        pid_t pid, main_pid;

        if (argc < 2) {
                fprintf(stderr, "usage: %s COMMAND [ARG...]\n", argv[0]);
                return 2;
        }
        if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) {
                perror("subreaper: PR_SET_CHILD_SUBREAPER");
                return 1;
        }
        /* If the fixture dies (even SIGKILL), we get SIGTERM and tear everything down. */
        if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() == 1)
                return 1;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGHUP, &sa, NULL);

        main_pid = fork();
        if (main_pid < 0)
                return 1;
        if (main_pid == 0) {
                signal(SIGTERM, SIG_DFL);
                signal(SIGINT, SIG_DFL);
                signal(SIGHUP, SIG_DFL);
                execvp(argv[1], argv + 1);
                perror("subreaper: exec");
                _exit(127);
        }
        subreaper_main_pid = main_pid;

        for (;;) {
                pid = wait(&status);
                if (pid < 0) {
                        if (errno == EINTR)
                                continue;
                        break; /* ECHILD: nothing left */
                }
                if (pid == main_pid) {
                        main_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
                        subreaper_main_pid = 0;
                        subreaper_kill_orphans();
                }
                /* Something may have been reparented to us after the first sweep. */
                if (subreaper_main_pid == 0)
                        subreaper_kill_orphans();
        }
        return main_status;
}
