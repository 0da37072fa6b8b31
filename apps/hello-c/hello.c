/* hello-c: apps/hello (the seed's sample.py) as a Gatehouse plugin in plain C.
 *
 * Every request gets 200, `Content-type: text/plain`, `Content-Length: 12` and the body
 * `Hello World!`. It needs nothing but the ABI header; by hand, from the repository root:
 *
 *     cc -std=c11 -fPIC -shared -I crates/gatehouse-abi/include \
 *        -o libhello_c.so apps/hello-c/hello.c
 */
#include <stddef.h>
#include <stdint.h>

#include "gatehouse.h"

/* Layout guards, the same as the Rust ABI crate's: a header that drifted from the daemon's
 * ABI fails this build instead of corrupting memory at run time. */
#if SIZE_MAX == UINT64_MAX
_Static_assert(sizeof(gh_Str) == 16, "gh_Str layout changed");
_Static_assert(sizeof(gh_Pair) == 32, "gh_Pair layout changed");
_Static_assert(sizeof(gh_Upload) == 72, "gh_Upload layout changed");
_Static_assert(sizeof(gh_InitContext) == 112, "gh_InitContext layout changed");
_Static_assert(sizeof(gh_HostApi) == 72, "gh_HostApi layout changed");
_Static_assert(sizeof(gh_Environ) == 72, "gh_Environ layout changed");
_Static_assert(sizeof(gh_AppDescriptor) == 96, "gh_AppDescriptor layout changed");
#endif

#define BODY "Hello World!"
_Static_assert(sizeof(BODY) - 1 == 12, "Content-Length below must match the body");

static gh_Status hello_init(const gh_InitContext *ctx, void **instance)
{
    (void)ctx;
    (void)instance; /* no per-instance state: the instance stays null */
    return gh_Status_OK;
}

/* Called per request, possibly from several threads at once: it only reads static data. */
static gh_Status hello_handle(void *instance, const gh_Environ *env)
{
    static const gh_Pair headers[] = {
        { GH_STR("Content-type"), GH_STR("text/plain") },
        { GH_STR("Content-Length"), GH_STR("12") },
    };
    static const gh_Str body = GH_STR(BODY);
    const gh_HostApi *host = env->host;
    gh_Status status;

    (void)instance;
    if (host == NULL || host->start_response == NULL || host->write == NULL)
        return gh_Status_ERROR;
    /* The host copies the headers and the body before each call returns. */
    status = host->start_response(env->request, 200, headers, sizeof headers / sizeof headers[0]);
    if (status != gh_Status_OK)
        return status;
    return host->write(env->request, body);
}

static void hello_shutdown(void *instance)
{
    (void)instance;
}

/* The descriptor lives as long as the library: a static, returned by the one exported symbol.
 * Everything else in this file is `static`, so `gatehouse_app` and the ABI version below are
 * all the plugin exports. */
static const gh_AppDescriptor descriptor = {
    .abi_version = gh_ABI_VERSION,
    .struct_size = sizeof(gh_AppDescriptor),
    .name = GH_STR("hello-c"),
    .version = GH_STR("0.1.0"),
    .init = hello_init,
    .handle = hello_handle,
    .shutdown = hello_shutdown,
    /* hello_handle answers from constants: the daemon may run it on its HTTP workers. */
    .flags = gh_AppFlags_NEVER_BLOCKS,
};

/* gatehouse.h gives only this function's type (gh_DescriptorFn); declare it before defining. */
const gh_AppDescriptor *gatehouse_app(void);

const gh_AppDescriptor *gatehouse_app(void)
{
    return &descriptor;
}

/* The ABI version as data, for `gatehouse check` (it reads the file, it runs nothing). */
GH_EXPORT_ABI_VERSION;
