/* peak agent: the BIRD 2 configuration that announces a node's slices by BGP. */
#include "agent.h"

#include <errno.h>
#include <stdio.h>

int agent_bird_config(const char *path, const struct bird_opts *b)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return -errno;
	fprintf(f,
	        "# BIRD 2 configuration written by peak agent for node %s.\n"
	        "# The agent keeps the node's slice routes in kernel table %u (protocol 0xa5);\n"
	        "# BIRD learns them from there and announces them to the router over BGP.\n"
	        "router id %s;\n"
	        "protocol device { scan time 10; }\n"
	        "protocol kernel peak_slices {\n"
	        "\tkernel table %u;\n"
	        "\tlearn;\n"
	        "\tscan time 5;\n"
	        "\tipv6 { import all; export none; };\n"
	        "}\n"
	        "protocol bgp uplink {\n"
	        "\tlocal as %u;\n"
	        "\tneighbor %s as %u;\n"
	        "\tconnect delay time 1;\n"
	        "\tconnect retry time 2;\n"
	        "\thold time 9;\n"
	        "\tkeepalive time 3;\n"
	        "\tipv6 { import none; export where source = RTS_INHERIT; next hop self; };\n"
	        "}\n",
	        b->node, b->table, b->router_id, b->table, b->local_as, b->neighbor, b->peer_as);
	return fclose(f) ? -errno : 0;
}
