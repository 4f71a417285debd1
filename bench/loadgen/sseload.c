/*
 * Load generator for streams, in C so that 1,000 concurrent streams cost the client almost
 * nothing (the Python client, bench/sse_client.py, needs most of a core for that). Same flags,
 * same checks and the same JSON output as the Python client:
 *
 *   sseload --host 127.0.0.1 --port P --path /v1/messages --kind anthropic|openai
 *           --concurrency C --duration S --grace G --ramp R --deltas N [--api-key K]
 *
 * C keep-alive connections each run one stream after another until S seconds have passed
 * (stream i first starts at i/C of R seconds, so the load is steady rather than in lockstep);
 * streams still running S+G seconds after the start are counted as unfinished. Times are in
 * microseconds from the start of the request (connecting included when a new connection was
 * needed) to the first byte of the response (ttfb) and to its last byte (ttlb).
 *
 * A stream is intact when, for `anthropic`, its events come in Anthropic's order
 * (message_start, ping, content_block_start, N content_block_delta, content_block_stop,
 * message_delta, message_stop) with delta texts "w0 " ... "w<N-1> "; for `openai`, when its
 * `data:` contents join to that same text and `data: [DONE]` comes last.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum state { IDLE, CONNECTING, EXCHANGING };

struct buf {
    char *data;
    size_t len, cap;
};

struct conn {
    int fd;
    enum state state;
    int64_t start_ns, first_ns, connect_ns;
    size_t sent;
    long head_end; /* -1 until the response head is complete */
    int chunked, must_close;
    long length;
    struct buf in;
};

struct samples {
    int64_t *v;
    size_t len, cap;
};

#define MAX_PROBLEMS 5
static struct {
    char text[128];
    long count;
} problems[MAX_PROBLEMS];

static int epfd;
static struct sockaddr_in addr;
static char *request;
static size_t request_len;
static int kind_openai, deltas = 50;
static char *expected;
static size_t expected_len;
static struct samples ttfb, ttlb, connect_us;
static long started, intact, broken, unfinished;
static struct buf scratch;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void reserve(struct buf *b, size_t extra) {
    if (b->len + extra <= b->cap) return;
    size_t cap = b->cap ? b->cap : 16384;
    while (cap < b->len + extra) cap *= 2;
    b->data = realloc(b->data, cap);
    if (!b->data) die("realloc");
    b->cap = cap;
}

static void push(struct samples *s, int64_t v) {
    if (s->len == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 4096;
        s->v = realloc(s->v, s->cap * sizeof *s->v);
        if (!s->v) die("realloc");
    }
    s->v[s->len++] = v;
}

static void problem(const char *text) {
    broken++;
    for (int i = 0; i < MAX_PROBLEMS; i++) {
        if (problems[i].count == 0) {
            snprintf(problems[i].text, sizeof problems[i].text, "%s", text);
            problems[i].count = 1;
            return;
        }
        if (strcmp(problems[i].text, text) == 0) {
            problems[i].count++;
            return;
        }
    }
}

/* ---- checking a finished stream -------------------------------------------------------- */

/* Dechunk body into scratch; 0 on success. */
static int dechunk(const char *body, size_t n) {
    scratch.len = 0;
    size_t pos = 0;
    for (;;) {
        const char *eol = memmem(body + pos, n - pos, "\r\n", 2);
        if (!eol) return -1;
        char *end;
        unsigned long size = strtoul(body + pos, &end, 16);
        if (end == body + pos) return -1;
        if (size == 0) return 0;
        size_t start = (size_t)(eol - body) + 2;
        if (start + size + 2 > n || memcmp(body + start + size, "\r\n", 2) != 0) return -1;
        reserve(&scratch, size);
        memcpy(scratch.data + scratch.len, body + start, size);
        scratch.len += size;
        pos = start + size + 2;
    }
}

static const char *const BEFORE[] = {"message_start", "ping", "content_block_start"};
static const char *const AFTER[] = {"content_block_stop", "message_delta", "message_stop"};

static const char *expected_event(int i) {
    if (i < 3) return BEFORE[i];
    if (i < 3 + deltas) return "content_block_delta";
    if (i < 6 + deltas) return AFTER[i - 3 - deltas];
    return NULL;
}

/* Append the JSON string starting right after the opening quote at p to `text`. */
static const char *take_string(const char *p, const char *end, struct buf *text) {
    const char *q = memchr(p, '"', (size_t)(end - p));
    if (!q) return end;
    reserve(text, (size_t)(q - p));
    memcpy(text->data + text->len, p, (size_t)(q - p));
    text->len += (size_t)(q - p);
    return q + 1;
}

/* After `key` (e.g. "\"content\":"), skip spaces to the opening quote; NULL if not a string. */
static const char *string_after(const char *p, const char *end) {
    while (p < end && *p == ' ') p++;
    return p < end && *p == '"' ? p + 1 : NULL;
}

static const char *check(const char *payload, size_t n) {
    static struct buf text;
    text.len = 0;
    const char *end = payload + n;
    const char *line = payload;
    int events = 0;
    int done_last = 0;
    while (line < end) {
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (!eol) eol = end;
        size_t len = (size_t)(eol - line);
        if (len && line[len - 1] == '\r') len--;
        if (!kind_openai && len > 7 && memcmp(line, "event: ", 7) == 0) {
            const char *want = expected_event(events++);
            if (!want || strlen(want) != len - 7 || memcmp(line + 7, want, len - 7) != 0)
                return "events out of order";
        } else if (len > 6 && memcmp(line, "data: ", 6) == 0) {
            const char *key = kind_openai ? "\"content\":" : "\"text_delta\",\"text\":";
            size_t klen = strlen(key);
            const char *k = memmem(line, len, key, klen);
            if (k) {
                const char *s = string_after(k + klen, line + len);
                if (s) take_string(s, line + len, &text);
            }
            done_last = kind_openai && len == 12 && memcmp(line + 6, "[DONE]", 6) == 0;
        }
        line = eol + 1;
    }
    if (!kind_openai && events != 6 + deltas) return "wrong number of events";
    if (kind_openai && !done_last) return "no data: [DONE] at the end";
    if (text.len != expected_len || memcmp(text.data, expected, expected_len) != 0)
        return "text differs";
    return NULL;
}

static void judge(struct conn *c, int64_t ended) {
    const char *head = c->in.data;
    if (c->in.len < 12 || memcmp(head + 9, "200", 3) != 0) {
        char text[64];
        snprintf(text, sizeof text, "status %.3s", c->in.len >= 12 ? head + 9 : "???");
        problem(text);
        return;
    }
    const char *body = c->in.data + c->head_end;
    size_t n = c->in.len - (size_t)c->head_end;
    if (c->chunked) {
        if (dechunk(body, n) != 0) {
            problem("bad chunked framing");
            return;
        }
        body = scratch.data;
        n = scratch.len;
    }
    const char *wrong = check(body, n);
    if (wrong) {
        problem(wrong);
        return;
    }
    intact++;
    push(&ttfb, (c->first_ns - c->start_ns) / 1000);
    push(&ttlb, (ended - c->start_ns) / 1000);
}

/* ---- connections ----------------------------------------------------------------------- */

static void drop(struct conn *c) {
    if (c->fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->state = IDLE;
}

static void want(struct conn *c, uint32_t events, int op) {
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(epfd, op, c->fd, &ev) < 0) die("epoll_ctl");
}

static void send_request(struct conn *c) {
    while (c->sent < request_len) {
        ssize_t n = write(c->fd, request + c->sent, request_len - c->sent);
        if (n > 0) {
            c->sent += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && errno == EAGAIN) {
            want(c, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
            return;
        } else {
            problem("write failed");
            drop(c);
            return;
        }
    }
    want(c, EPOLLIN, EPOLL_CTL_MOD);
}

/* Start a stream on c; 0 if it could not even start (the connection then stays idle). */
static int begin(struct conn *c) {
    started++;
    c->start_ns = now_ns();
    c->first_ns = 0;
    c->sent = 0;
    c->head_end = -1;
    c->in.len = 0;
    c->state = EXCHANGING;
    if (c->fd >= 0) {
        send_request(c);
        return c->state != IDLE;
    }
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) die("socket");
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->state = CONNECTING;
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) == 0) {
        c->state = EXCHANGING;
        push(&connect_us, (now_ns() - c->start_ns) / 1000);
        want(c, EPOLLIN, EPOLL_CTL_ADD);
        send_request(c);
        return c->state != IDLE;
    }
    if (errno == EINPROGRESS) {
        want(c, EPOLLOUT, EPOLL_CTL_ADD);
        return 1;
    }
    problem("connect failed");
    close(c->fd);
    c->fd = -1;
    c->state = IDLE;
    return 0;
}

static void parse_head(struct conn *c) {
    const char *end = memmem(c->in.data, c->in.len, "\r\n\r\n", 4);
    if (!end) return;
    c->head_end = end - c->in.data + 4;
    c->chunked = 0;
    c->must_close = 0;
    c->length = -1;
    const char *line = memchr(c->in.data, '\n', (size_t)(end - c->in.data));
    while (line && line < end) {
        line++;
        const char *eol = memchr(line, '\n', (size_t)(end + 2 - line));
        if (!eol) break;
        if (strncasecmp(line, "transfer-encoding:", 18) == 0 &&
            memmem(line, (size_t)(eol - line), "chunked", 7))
            c->chunked = 1;
        else if (strncasecmp(line, "content-length:", 15) == 0)
            c->length = strtol(line + 15, NULL, 10);
        else if (strncasecmp(line, "connection:", 11) == 0 &&
                 memmem(line, (size_t)(eol - line), "close", 5))
            c->must_close = 1;
        line = eol;
    }
}

static int response_complete(struct conn *c) {
    if (c->head_end < 0) return 0;
    size_t body = c->in.len - (size_t)c->head_end;
    if (c->chunked)
        return (body >= 7 && memcmp(c->in.data + c->in.len - 7, "\r\n0\r\n\r\n", 7) == 0) ||
               (body == 5 && memcmp(c->in.data + c->head_end, "0\r\n\r\n", 5) == 0);
    return c->length >= 0 && (long)body >= c->length;
}

/* Returns 1 when the exchange ended (the connection is idle or dropped). */
static int on_readable(struct conn *c) {
    for (;;) {
        reserve(&c->in, 65536);
        ssize_t n = read(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len);
        if (n > 0) {
            if (!c->first_ns) c->first_ns = now_ns();
            c->in.len += (size_t)n;
            if (c->head_end < 0) parse_head(c);
            if (response_complete(c)) {
                judge(c, now_ns());
                if (c->must_close) drop(c);
                else c->state = IDLE;
                return 1;
            }
        } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            if (c->head_end >= 0 && !c->chunked && c->length < 0) {
                judge(c, now_ns()); /* a body delimited by the connection's end */
            } else {
                problem("connection closed mid-response");
            }
            drop(c);
            return 1;
        } else if (errno == EAGAIN) {
            return 0;
        }
    }
}

/* ---- main ------------------------------------------------------------------------------ */

static double flag_number(const char *name, const char *v) {
    char *end;
    double d = strtod(v, &end);
    if (*v == '\0' || *end != '\0' || d < 0) {
        fprintf(stderr, "sseload: %s needs a non-negative number\n", name);
        exit(2);
    }
    return d;
}

static void print_samples(const char *name, struct samples *s, int last) {
    printf("\"%s\":[", name);
    for (size_t i = 0; i < s->len; i++) printf(i ? ",%lld" : "%lld", (long long)s->v[i]);
    printf("]%s", last ? "" : ",");
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1", *path = "/v1/messages", *api_key = NULL;
    int port = 0, concurrency = 100;
    double duration = 10, grace = 30, ramp = 1;
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(a, "--host")) host = v;
        else if (!strcmp(a, "--port")) port = (int)flag_number(a, v);
        else if (!strcmp(a, "--path")) path = v;
        else if (!strcmp(a, "--kind")) kind_openai = !strcmp(v, "openai");
        else if (!strcmp(a, "--concurrency")) concurrency = (int)flag_number(a, v);
        else if (!strcmp(a, "--duration")) duration = flag_number(a, v);
        else if (!strcmp(a, "--grace")) grace = flag_number(a, v);
        else if (!strcmp(a, "--ramp")) ramp = flag_number(a, v);
        else if (!strcmp(a, "--deltas")) deltas = (int)flag_number(a, v);
        else if (!strcmp(a, "--api-key")) api_key = v;
        else {
            fprintf(stderr, "sseload: unknown flag %s (see the comment at the top of "
                            "sseload.c)\n", a);
            return 2;
        }
    }
    if (concurrency < 1 || port < 1) {
        fprintf(stderr, "sseload: --port and --concurrency are required\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        fprintf(stderr, "sseload: --host must be an IPv4 address\n");
        return 2;
    }
    static const char body[] = "{\"model\":\"claude-sonnet-4-6\",\"max_tokens\":64,"
                               "\"stream\":true,\"messages\":[{\"role\":\"user\","
                               "\"content\":\"hi\"}]}";
    char key_header[512] = "";
    if (api_key) snprintf(key_header, sizeof key_header, "x-api-key: %s\r\n", api_key);
    request_len = (size_t)asprintf(
        &request,
        "POST %s HTTP/1.1\r\nhost: %s:%d\r\ncontent-type: application/json\r\n"
        "anthropic-version: 2023-06-01\r\naccept: text/event-stream\r\n%s"
        "content-length: %zu\r\n\r\n%s",
        path, host, port, key_header, sizeof body - 1, body);
    struct buf exp = {0};
    for (int i = 0; i < deltas; i++) {
        char word[32];
        int n = snprintf(word, sizeof word, "w%d ", i);
        reserve(&exp, (size_t)n);
        memcpy(exp.data + exp.len, word, (size_t)n);
        exp.len += (size_t)n;
    }
    expected = exp.data ? exp.data : "";
    expected_len = exp.len;

    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) die("epoll_create1");
    struct conn *conns = calloc((size_t)concurrency, sizeof *conns);
    if (!conns) die("calloc");
    for (int i = 0; i < concurrency; i++) conns[i].fd = -1;

    int64_t t0 = now_ns();
    int64_t stop_starting = t0 + (int64_t)(duration * 1e9);
    int64_t hard_stop = stop_starting + (int64_t)(grace * 1e9);
    int next_first = 0; /* connections not yet started, in ramp order */
    int active = 0;
    struct epoll_event events[512];
    for (;;) {
        int64_t now = now_ns();
        while (next_first < concurrency &&
               t0 + (int64_t)(ramp * 1e9 * next_first / concurrency) <= now) {
            if (now < stop_starting && begin(&conns[next_first])) active++;
            next_first++;
        }
        if (now >= hard_stop || (next_first == concurrency && active == 0)) break;
        int64_t wake = hard_stop;
        if (next_first < concurrency) {
            int64_t due = t0 + (int64_t)(ramp * 1e9 * next_first / concurrency);
            if (due < wake) wake = due;
        }
        int timeout = (int)((wake - now + 999999) / 1000000);
        int n = epoll_wait(epfd, events, 512, timeout);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            int ended = 0;
            if (c->state == CONNECTING) {
                int err = 0;
                socklen_t len = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
                if (err) {
                    /* A refused connect ends this connection's run: retrying at once would
                     * spin, and the count of broken streams already says what happened. */
                    problem("connect failed");
                    drop(c);
                    active--;
                    continue;
                } else {
                    c->state = EXCHANGING;
                    push(&connect_us, (now_ns() - c->start_ns) / 1000);
                    send_request(c);
                    ended = c->state == IDLE;
                }
            } else if (c->state == EXCHANGING) {
                if ((events[i].events & EPOLLOUT) && c->sent < request_len) send_request(c);
                if (c->state == EXCHANGING && (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                    ended = on_readable(c);
                else if (c->state == IDLE)
                    ended = 1;
            } else {
                drop(c); /* the server closed an idle keep-alive connection */
            }
            if (ended) {
                if (now_ns() >= stop_starting || !begin(c)) {
                    drop(c);
                    active--;
                }
            }
        }
    }
    for (int i = 0; i < concurrency; i++)
        if (conns[i].state != IDLE) unfinished++;

    printf("{\"started\":%ld,\"intact\":%ld,\"broken\":%ld,\"unfinished\":%ld,", started, intact,
           broken, unfinished);
    print_samples("ttfb_us", &ttfb, 0);
    print_samples("ttlb_us", &ttlb, 0);
    print_samples("connect_us", &connect_us, 0);
    printf("\"problems\":{");
    for (int i = 0; i < MAX_PROBLEMS && problems[i].count; i++)
        printf("%s\"%s\":%ld", i ? "," : "", problems[i].text, problems[i].count);
    printf("}}\n");
    return 0;
}
