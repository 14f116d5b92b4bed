"""The OCI image: built by oci/build.sh, run and checked by oci/test.sh (`python -m oci.check_image`)."""
