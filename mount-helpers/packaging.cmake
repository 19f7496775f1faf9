# The Debian package: cmake --build build --target package (or cpack in the
# build tree) writes build/originfs_VERSION_amd64.deb. Its Depends are found by
# dpkg-shlibdeps (dpkg-dev) from the libraries the binary links, plus fuse3
# (fusermount3, /etc/fuse.conf). Nothing goes to /etc; no maintainer scripts:
# installing or removing the package touches no bucket and no state dir.
# Checked by tests/package/package_test.sh (ctest -L package).
set(CPACK_GENERATOR "DEB")
set(CPACK_SOURCE_GENERATOR "")
set(CPACK_PACKAGE_NAME "originfs")
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGE_VENDOR "originfs")
set(CPACK_PACKAGE_CONTACT "originfs maintainers <originfs@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "FUSE filesystem that fills a bucket directory from origin servers on demand")
set(CPACK_PACKAGE_DESCRIPTION
    "originfs mounts a bucket directory at a path and fills it from an old server
(the origin) on demand: when a program looks up or opens a file that is not in
the bucket yet, originfs matches the path against ordered prefix rules,
downloads the file from that rule's origin into the bucket atomically and
serves it; every later read is local. Includes the mount(8) helper, a systemd
template unit, man pages and bash completion.")
set(CPACK_PACKAGING_INSTALL_PREFIX "/usr")
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME "DEB-DEFAULT")
set(CPACK_DEBIAN_PACKAGE_SECTION "admin")
set(CPACK_DEBIAN_PACKAGE_PRIORITY "optional")
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "fuse3")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "bash-completion")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_DEBIAN_COMPRESSION_TYPE "xz")
include(CPack)
