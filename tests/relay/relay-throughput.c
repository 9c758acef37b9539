/* tests/relay/relay-throughput.c: placeholder, replaced by the measurement program. */
int main(void)
{
        return 0;
}
