/* The library's version at run time: a program compiled against a newer
 * header than the library it runs on can find out (docs/ABI.md). */
#include "evloop.h"

int evl_version(void)
{
    return EVL_VERSION_NUMBER;
}
