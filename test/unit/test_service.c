/* Unit tests: gateway/service.c (the descriptor need, the drop's no-op and
 * refusal cases, sd_notify datagrams to a path and to an abstract socket). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../base/dns.h"
#include "../../base/log.h"
#include "../../gateway/service.h"
#include "check.h"

static void fd_need(void)
{
    cfg_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg_addr_t servers[3];
    memset(servers, 0, sizeof servers);
    cfg_upstream_t ups[2];
    memset(ups, 0, sizeof ups);
    ups[0].servers = servers;
    ups[0].nservers = 2;
    ups[0].keepalive = 8;
    ups[1].servers = servers;
    ups[1].nservers = 1;
    ups[1].keepalive = 4;
    cfg.upstreams = ups;
    cfg.nupstreams = 2;
    cfg.workers = 4;
    cfg.nlisteners = 2;
    cfg.limits.max_connections = 10000;
    /* 20000 clients + 4 x (16 + 4) pools + 6 Redis + 8 listening + 4 x 5 + 128 */
    CHECK(gw_service_fd_need(&cfg) == 20000 + 80 + 6 + 8 + 20 + 128,
          "the need adds clients x 2, pools per worker, Redis, listeners, loops and the margin");
    cfg.limits.max_connections = 1;
    cfg.nupstreams = 0;
    cfg.workers = 1;
    cfg.nlisteners = 1;
    CHECK(gw_service_fd_need(&cfg) == 2 + 3 + 1 + 8 + 128, "the smallest configuration");
    /* a named server: PC_DNS_MAX_ADDRS endpoints, each with its own pool */
    cfg.limits.max_connections = 10000;
    cfg.nupstreams = 2;
    cfg.workers = 4;
    cfg.nlisteners = 2;
    servers[0].dns = pc_dns_intern("api.test", 80, NULL, 0);
    CHECK(servers[0].dns && cfg_upstream_endpoints(&ups[0]) == PC_DNS_MAX_ADDRS + 1,
          "a name and a literal: PC_DNS_MAX_ADDRS + 1 endpoints");
    /* 4 x (8 x (8 + 1) + 4 x 8) pools */
    CHECK(gw_service_fd_need(&cfg) == 20000 + 4 * (8 * 9 + 4 * 8) + 6 + 8 + 20 + 128,
          "the pools count every endpoint of a named server");
    pc_dns_name_release(servers[0].dns);
    servers[0].dns = NULL;
}

static void drop(void)
{
    char err[512] = "";
    cfg_runas_t none = {0};
    CHECK(gw_service_drop(&none, err, sizeof err) == 0 && err[0] == '\0', "no user: nothing to do");
    if (geteuid() == 0) {   /* the refusals need a non-root process: a child as nobody */
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            if (setgid(65534) != 0 || setuid(65534) != 0)
                _exit(3);
            check_passed = check_failed = 0;
            drop();
            fflush(stdout);
            _exit(check_failed ? 1 : 0);
        }
        int st = -1;
        waitpid(pid, &st, 0);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the refusals, as nobody");
        return;
    }
    cfg_runas_t other = {.user = "someone-else", .uid = geteuid() + 1, .gid = getegid()};
    CHECK(gw_service_drop(&other, err, sizeof err) == -1 && strstr(err, "not root"),
          "user: set while not root: refused");
    cfg_runas_t self = {.user = "me", .uid = geteuid(), .gid = getegid()};
    CHECK(gw_service_drop(&self, err, sizeof err) == 0, "user: the user already running: nothing to do");
}

/* sd_notify to addr ("/path" or "@name"): what the receiver got. */
static void notify_to(const char *addr, const char *what)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(addr);
    memcpy(sa.sun_path, addr, len);
    if (addr[0] == '@')
        sa.sun_path[0] = '\0';
    else
        unlink(addr);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int bound = bind(fd, (struct sockaddr *)&sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) == 0;
    CHECK(bound, what);
    setenv("NOTIFY_SOCKET", addr, 1);
    gw_service_notify_init();
    gw_service_notify("READY=1\nSTATUS=x");
    char buf[64] = "";
    ssize_t n = recv(fd, buf, sizeof buf - 1, MSG_DONTWAIT);
    CHECK(n == 16 && memcmp(buf, "READY=1\nSTATUS=x", 16) == 0, what);
    gw_service_notify_close();
    gw_service_notify("STOPPING=1");   /* closed: nothing sent */
    CHECK(recv(fd, buf, sizeof buf, MSG_DONTWAIT) < 0, "nothing sent once closed");
    close(fd);
    if (addr[0] == '/')
        unlink(addr);
}

static void notify(void)
{
    unsetenv("NOTIFY_SOCKET");
    gw_service_notify_init();
    gw_service_notify("READY=1");   /* no variable: a no-op */
    CHECK(1, "no NOTIFY_SOCKET: no-op");
    char path[64];
    snprintf(path, sizeof path, "/tmp/portcullis-notify-%ld.sock", (long)getpid());
    notify_to(path, "sd_notify to a socket path");
    char abs[64];
    snprintf(abs, sizeof abs, "@portcullis-notify-%ld", (long)getpid());
    notify_to(abs, "sd_notify to an abstract socket");
}

int main(void)
{
    fd_need();
    drop();
    notify();
    return check_done();
}
